// The spatial split of the VAE decode over the VAE ranks (issue 5): rank r of the group owns band r, a contiguous
// run of latent rows of every frame (top to bottom in rank order), and the same rows ×s at every later resolution.
// A 3×3 convolution reads one halo row above and below its band from the neighbouring ranks; the bands of whole
// frames are put back together by a gather.
#pragma once
#include <cstdint>

#include "comm/comm.h"
#include "model/core/backend.h"

namespace ditrun::parallel {

// Rows [first, first + count).
struct RowBand {
  int64_t first = 0;
  int64_t count = 0;
};

// Band `index` of `rows` rows split over `parts` ranks as evenly as possible: the first rows % parts bands get one
// row more (so band 0 is a widest one). Throws std::invalid_argument when rows < parts: a band would be empty and a
// 3×3 convolution could not find its halo row on the neighbour.
RowBand row_band(int64_t rows, int parts, int index);

// band [n, h, W, C] (contiguous: this rank's rows of n frames), halo_rows [2, m, W, C] with m ≥ first + n: fills
// halo_rows[0][first + f] with the last band row of frame f on the rank above and halo_rows[1][first + f] with the
// first band row of frame f on the rank below; zeros at the top and bottom of the image (what the single-rank
// convolution's zero padding reads there). That is Backend::causal_conv3d's halo_rows argument. Collective over
// `group` (point-to-point with the neighbours, on the backend's stream).
void exchange_halo_rows(Backend& be, comm::Comm& group, const Tensor& band, Tensor& halo_rows, int64_t first);

// Whole frames from every rank's band: band [outer, s·count_r, inner] of this rank r -> whole [outer, s·rows,
// inner] on every rank, where band r = row_band(rows, group size, r) and s = `scale` (the resolution over the
// latent's). An all-gather of the bands padded to the widest one, then cut. Collective over `group`.
void gather_row_bands(Backend& be, comm::Comm& group, const Tensor& band, Tensor& whole, int64_t rows,
                      int64_t scale);

}  // namespace ditrun::parallel
