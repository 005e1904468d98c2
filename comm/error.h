// Checked calls: every MPI, NCCL and CUDA return code is checked; a failure carries the call, place and rank.
#pragma once
#include <stdexcept>
#include <string>

namespace ditrun::comm {

// A communication or device runtime failure (exit code 1, unlike bad input).
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// World rank of this process for messages (-1 before MPI is up).
int world_rank_for_messages();

[[noreturn]] void throw_call_error(const char* api, const char* call, const std::string& detail, const char* file,
                                   int line);
void check_mpi(int code, const char* call, const char* file, int line);

}  // namespace ditrun::comm

#define DITRUN_MPI_CHECK(call) ::ditrun::comm::check_mpi((call), #call, __FILE__, __LINE__)
