#include "model/parallel/row_bands.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

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

void exchange_halo_rows(Backend& be, comm::Comm& group, Tensor& frames) {
  if (frames.rank() != 4 || frames.dim(1) < 3 || frames.dtype() != DType::f32)
    throw std::invalid_argument("exchange_halo_rows: frames " + shape_string(frames.shape()) +
                                " must be f32 [n, band + 2, W, C] with a band of at least one row");
  const int64_t n = frames.dim(0), padded = frames.dim(1), row = frames.dim(2) * frames.dim(3);
  const int me = group.rank();
  const int above = me > 0 ? me - 1 : -1, below = me + 1 < group.size() ? me + 1 : -1;
  const comm::Stream stream{be.stream_handle()};
  // The rows every frame sends and receives, packed into one buffer per direction: two messages per call instead
  // of two per frame (halo rows are small, so a message costs latency, not bandwidth).
  const Arena::Mark mark = be.arena().mark();
  Tensor first_rows = be.scratch({n, row}, DType::f32), last_rows = be.scratch({n, row}, DType::f32);
  Tensor from_below = be.scratch({n, row}, DType::f32), from_above = be.scratch({n, row}, DType::f32);
  for (int64_t f = 0; f < n; ++f) {
    const Tensor rows = frames.slice(f, f + 1).view({padded, row});
    Tensor first = rows_of(first_rows, f, 1), last = rows_of(last_rows, f, 1);
    if (above >= 0) be.copy(first, rows_of(rows, 1, 1));
    if (below >= 0) be.copy(last, rows_of(rows, padded - 2, 1));
  }
  const auto count = static_cast<size_t>(n * row);
  // Upward: my first band rows go to the rank above, my bottom halos come from the rank below. Downward: my last
  // band rows go below, my top halos come from above. Each pair of ranks sees messages in one direction per
  // phase, so the two phases can be in flight together.
  std::vector<std::unique_ptr<comm::Pending>> pending;
  pending.push_back(group.send_recv(first_rows.data(), above, from_below.data(), below, count, DType::f32, stream));
  pending.push_back(group.send_recv(last_rows.data(), below, from_above.data(), above, count, DType::f32, stream));
  for (auto& p : pending) p->wait(stream);
  for (int64_t f = 0; f < n; ++f) {
    const Tensor rows = frames.slice(f, f + 1).view({padded, row});
    Tensor top = rows_of(rows, 0, 1), bottom = rows_of(rows, padded - 1, 1);
    if (above >= 0) be.copy(top, rows_of(from_above, f, 1));
    if (below >= 0) be.copy(bottom, rows_of(from_below, f, 1));
  }
  be.arena().rewind(mark);
  // The image border: the zero padding of the single-rank convolution (spec §4.2).
  for (int64_t f = 0; f < n; ++f) {
    const Tensor rows = frames.slice(f, f + 1).view({padded, row});
    if (above < 0) zero(be, rows_of(rows, 0, 1));
    if (below < 0) zero(be, rows_of(rows, padded - 1, 1));
  }
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
  const Arena::Mark mark = be.arena().mark();
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
  be.arena().rewind(mark);
}

}  // namespace ditrun::parallel
