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

void exchange_halo_rows(Backend& be, comm::Comm& group, Tensor& frames) {
  if (frames.rank() != 4 || frames.dim(1) < 3 || frames.dtype() != DType::f32)
    throw std::invalid_argument("exchange_halo_rows: frames " + shape_string(frames.shape()) +
                                " must be f32 [n, band + 2, W, C] with a band of at least one row");
  const int64_t n = frames.dim(0), padded = frames.dim(1), row = frames.dim(2) * frames.dim(3);
  const int me = group.rank();
  const int above = me > 0 ? me - 1 : -1, below = me + 1 < group.size() ? me + 1 : -1;
  const comm::Stream stream{be.stream_handle()};
  // The rows every frame sends and receives, packed into one buffer per direction with one pitched copy each:
  // two messages and four copies per call, whatever the frame count (halo rows are small: a message or a copy
  // costs its latency, not bandwidth).
  const Arena::Scope scope(be.arena());
  Tensor first_rows = be.scratch({n, row}, DType::f32), last_rows = be.scratch({n, row}, DType::f32);
  Tensor from_below = be.scratch({n, row}, DType::f32), from_above = be.scratch({n, row}, DType::f32);
  const comm::Memory memory = group.memory();
  const size_t row_bytes = static_cast<size_t>(row) * sizeof(float), frame_bytes = padded * row_bytes;
  char* base = static_cast<char*>(frames.data());
  const auto frames_count = static_cast<size_t>(n);
  if (above >= 0)
    comm::copy_strided(memory, first_rows.data(), row_bytes, base + row_bytes, frame_bytes, row_bytes, frames_count,
                       stream);
  if (below >= 0)
    comm::copy_strided(memory, last_rows.data(), row_bytes, base + (padded - 2) * row_bytes, frame_bytes, row_bytes,
                       frames_count, stream);
  const auto count = static_cast<size_t>(n * row);
  // Upward: my first band rows go to the rank above, my bottom halos come from the rank below. Downward: my last
  // band rows go below, my top halos come from above. Each pair of ranks sees messages in one direction per
  // phase, so the two phases can be in flight together.
  std::vector<std::unique_ptr<comm::Pending>> pending;
  pending.push_back(group.send_recv(first_rows.data(), above, from_below.data(), below, count, DType::f32, stream));
  pending.push_back(group.send_recv(last_rows.data(), below, from_above.data(), above, count, DType::f32, stream));
  for (auto& p : pending) p->wait(stream);
  // Received halos into place; at the image border the zero padding of the single-rank convolution (spec §4.2).
  if (above >= 0)
    comm::copy_strided(memory, base, frame_bytes, from_above.data(), row_bytes, row_bytes, frames_count, stream);
  else
    comm::zero_strided(memory, base, frame_bytes, row_bytes, frames_count, stream);
  if (below >= 0)
    comm::copy_strided(memory, base + (padded - 1) * row_bytes, frame_bytes, from_below.data(), row_bytes, row_bytes,
                       frames_count, stream);
  else
    comm::zero_strided(memory, base + (padded - 1) * row_bytes, frame_bytes, row_bytes, frames_count, stream);
}

void place_band_rows(Backend& be, comm::Comm& group, const Tensor& band, Tensor& frames) {
  const int64_t n = band.dim(0), h = band.dim(1);
  if (band.rank() != 4 || frames.shape() != Shape{n, h + 2, band.dim(2), band.dim(3)} || band.dtype() != DType::f32 ||
      frames.dtype() != DType::f32)
    throw std::invalid_argument("place_band_rows: band " + shape_string(band.shape()) + " into frames " +
                                shape_string(frames.shape()));
  const size_t row_bytes = static_cast<size_t>(band.dim(2) * band.dim(3)) * sizeof(float);
  comm::copy_strided(group.memory(), static_cast<char*>(frames.data()) + row_bytes, (h + 2) * row_bytes, band.data(),
                     h * row_bytes, h * row_bytes, static_cast<size_t>(n), comm::Stream{be.stream_handle()});
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
