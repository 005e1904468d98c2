// One time axis for the timelines in report.json (when each prompt's text was encoded, when it was denoised):
// seconds since rank 0 started the job. Every rank reads its system clock against rank 0's start, so ranks on other
// hosts agree as far as the hosts' clocks do (NTP: about a millisecond).
#pragma once

#include "comm/mpi_runtime.h"

namespace ditrun {

class JobClock {
 public:
  explicit JobClock(const comm::MpiRuntime& mpi);  // collective: rank 0's start goes to every rank
  double now() const;

 private:
  double origin_;  // rank 0's system clock at the start, seconds since the epoch
};

}  // namespace ditrun
