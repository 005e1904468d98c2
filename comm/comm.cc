#include "comm/comm.h"

#include <utility>
#include <vector>

namespace ditrun::comm {

namespace {

// Completes when every part has.
class AllPending : public Pending {
 public:
  explicit AllPending(std::vector<std::unique_ptr<Pending>> parts) : parts_(std::move(parts)) {}
  void wait(Stream on) override {
    for (auto& p : parts_) p->wait(on);
  }

 private:
  std::vector<std::unique_ptr<Pending>> parts_;
};

}  // namespace

std::unique_ptr<Pending> Comm::send_recv_all(std::span<const Transfer> transfers, DType dtype, Stream s) {
  std::vector<std::unique_ptr<Pending>> parts;
  parts.reserve(transfers.size());
  for (const Transfer& t : transfers) parts.push_back(send_recv(t.send, t.dst, t.recv, t.src, t.count, dtype, s));
  return std::make_unique<AllPending>(std::move(parts));
}

}  // namespace ditrun::comm
