#include "model/parallel/row_bands.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/strided_copy.h"

namespace ditrun::parallel {

namespace {

void zero(Backend& be, Tensor t) { be.lincomb(t, {}, {}); }  // an empty sum: zeros on every backend

// Rows [first, first + count) of a [rows, inner] view.
Tensor rows_of(const Tensor& t, int64_t first, int64_t count) { return t.slice(first, first + count); }

}  // namespace

RowBand row_band(int64_t rows, int parts, int index) {
  if (parts < 1 || index < 0 || index >= parts)
    throw std::invalid_argument("row band " + std::to_string(index) + " of " + std::to_string(parts) + " ranks");
  if (rows < parts)
    throw std::invalid_argument("cannot split " + std::to_string(rows) + " latent rows over " +
                                std::to_string(parts) + " VAE ranks: each rank needs at least one row");
  const int64_t base = rows / parts, extra = rows % parts;
  return {index * base + std::min<int64_t>(index, extra), base + (index < extra ? 1 : 0)};
}

void exchange_halo_rows(Backend& be, comm::Comm& group, const Tensor& band, Tensor& halo_rows, int64_t first) {
  const int64_t n = band.dim(0), h = band.dim(1), m = halo_rows.rank() == 4 ? halo_rows.dim(1) : 0;
  if (band.rank() != 4 || h < 1 || band.dtype() != DType::f32 || halo_rows.dtype() != DType::f32 || first < 0 ||
      first + n > m || halo_rows.shape() != Shape{2, m, band.dim(2), band.dim(3)})
    throw std::invalid_argument("exchange_halo_rows: band " + shape_string(band.shape()) + " into halo rows " +
                                shape_string(halo_rows.shape()) + " from frame " + std::to_string(first) +
                                " (needs f32 [n, h ≥ 1, W, C] and [2, ≥ first + n, W, C])");
  const int64_t row = band.dim(2) * band.dim(3);
  const int me = group.rank();
  const int above = me > 0 ? me - 1 : -1, below = me + 1 < group.size() ? me + 1 : -1;
  const comm::Stream stream{be.stream_handle()};
  // Received straight into place: side 0 (rows above) and side 1 (rows below) each hold the frames contiguously.
  Tensor from_above = halo_rows.slice(0, 1).view({m, row}).slice(first, first + n);
  Tensor from_below = halo_rows.slice(1, 2).view({m, row}).slice(first, first + n);
  // What goes out: every frame's first and last band row, packed by one pitched copy each when there are several
  // frames (one frame's rows are contiguous already). One message per neighbour and direction: halo rows are
  // small, a message or a copy costs its latency, not bandwidth.
  const Arena::Scope scope(be.arena());
  const comm::Memory memory = group.memory();
  const size_t row_bytes = static_cast<size_t>(row) * sizeof(float), frame_bytes = h * row_bytes;
  char* base = static_cast<char*>(band.data());
  const void* first_rows = base;
  const void* last_rows = base + (h - 1) * row_bytes;
  if (n > 1) {
    Tensor first_copy = be.scratch({n, row}, DType::f32), last_copy = be.scratch({n, row}, DType::f32);
    if (above >= 0)
      comm::copy_strided(memory, first_copy.data(), row_bytes, base, frame_bytes, row_bytes, static_cast<size_t>(n),
                         stream);
    if (below >= 0)
      comm::copy_strided(memory, last_copy.data(), row_bytes, base + (h - 1) * row_bytes, frame_bytes, row_bytes,
                         static_cast<size_t>(n), stream);
    first_rows = first_copy.data();
    last_rows = last_copy.data();
  }
  const auto count = static_cast<size_t>(n * row);
  // Upward: my first band rows to the rank above, my rows below from the rank below; downward the reverse. One
  // call, so NCCL runs both directions as one group.
  const comm::Transfer transfers[] = {{first_rows, above, from_below.data(), below, count},
                                      {last_rows, below, from_above.data(), above, count}};
  group.send_recv_all(transfers, DType::f32, stream)->wait(stream);
  // At the image border: the zero padding of the single-rank convolution (spec §4.2).
  if (above < 0) zero(be, from_above);
  if (below < 0) zero(be, from_below);
}

void gather_row_bands(Backend& be, comm::Comm& group, const Tensor& band, Tensor& whole, int64_t rows,
                      int64_t scale) {
  const int parts = group.size();
  const RowBand mine = row_band(rows, parts, group.rank());
  const int64_t outer = band.dim(0), inner = band.rank() == 3 ? band.dim(2) : 0;
  if (band.rank() != 3 || band.dim(1) != mine.count * scale || whole.shape() != Shape{outer, rows * scale, inner} ||
      band.dtype() != DType::f32 || whole.dtype() != DType::f32)
    throw std::invalid_argument("gather_row_bands: band " + shape_string(band.shape()) + " whole " +
                                shape_string(whole.shape()) + " for " + std::to_string(rows) + " rows ×" +
                                std::to_string(scale) + " over " + std::to_string(parts) + " ranks");
  const Arena::Scope scope(be.arena());
  const int64_t widest = row_band(rows, parts, 0).count * scale;
  Tensor send = be.scratch({outer, widest, inner}, DType::f32);
  if (mine.count * scale < widest) zero(be, send);  // the padding travels too: make it defined
  for (int64_t o = 0; o < outer; ++o) {
    Tensor dst = rows_of(send.slice(o, o + 1).view({widest, inner}), 0, mine.count * scale);
    be.copy(dst, band.slice(o, o + 1).view({mine.count * scale, inner}));
  }
  Tensor all = be.scratch({parts, outer, widest, inner}, DType::f32);
  group.all_gather(send.data(), all.data(), static_cast<size_t>(send.numel()), DType::f32,
                   comm::Stream{be.stream_handle()});
  for (int r = 0; r < parts; ++r) {
    const RowBand b = row_band(rows, parts, r);
    const Tensor from = all.slice(r, r + 1).view({outer, widest, inner});
    for (int64_t o = 0; o < outer; ++o) {
      Tensor dst = rows_of(whole.slice(o, o + 1).view({rows * scale, inner}), b.first * scale, b.count * scale);
      be.copy(dst, rows_of(from.slice(o, o + 1).view({widest, inner}), 0, b.count * scale));
    }
  }
}

}  // namespace ditrun::parallel
