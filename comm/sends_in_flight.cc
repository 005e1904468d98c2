#include "comm/sends_in_flight.h"

#include <climits>

#include "comm/abort.h"
#include "comm/error.h"

namespace ditrun::comm {

SendsInFlight::~SendsInFlight() {
  if (!requests_.empty()) abort_job("sends still in flight when their buffers go away (a logic error)", 1);
}

void SendsInFlight::send_floats(const std::vector<float>& data, int to, int tag) {
  if (data.size() > static_cast<size_t>(INT_MAX)) throw CommError("send_floats: more than INT_MAX values");
  MPI_Request request;
  DITRUN_MPI_CHECK(
      MPI_Isend(data.data(), static_cast<int>(data.size()), MPI_FLOAT, to, tag, MPI_COMM_WORLD, &request));
  requests_.push_back(request);
}

void SendsInFlight::progress() {
  if (requests_.empty()) return;
  int done = 0;
  DITRUN_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE));
  if (done) requests_.clear();
}

void SendsInFlight::wait_all() {
  if (requests_.empty()) return;
  DITRUN_MPI_CHECK(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
  requests_.clear();
}

}  // namespace ditrun::comm
