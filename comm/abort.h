// Ending the whole job promptly when one rank fails: abort NCCL communicators, then MPI_Abort, so no peer hangs
// in a collective.
#pragma once
#include <functional>
#include <string>

namespace ditrun::comm {

// Runs on abort before MPI_Abort (e.g. ncclCommAbort of a communicator). Returns an id for remove_abort_hook.
int add_abort_hook(std::function<void()> hook);
void remove_abort_hook(int id);

// Prints "ditrun: error: <reason> (rank N)" on stderr, runs the hooks, and ends every rank of the job with
// exit_code (MPI_Abort; plain exit when MPI is not running).
[[noreturn]] void abort_job(const std::string& reason, int exit_code);

}  // namespace ditrun::comm
