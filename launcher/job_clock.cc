#include "launcher/job_clock.h"

#include <chrono>
#include <limits>

namespace ditrun {

namespace {
double epoch_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

JobClock::JobClock(const comm::MpiRuntime& mpi)
    : origin_(mpi.max_over_ranks(mpi.rank() == 0 ? epoch_seconds() : std::numeric_limits<double>::lowest())) {}

double JobClock::now() const { return epoch_seconds() - origin_; }

}  // namespace ditrun
