#include "comm/abort.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "comm/error.h"

namespace ditrun::comm {

namespace {
std::mutex hooks_mutex;
std::map<int, std::function<void()>>& hooks() {
  static std::map<int, std::function<void()>> h;
  return h;
}
int next_hook_id = 0;
}  // namespace

int add_abort_hook(std::function<void()> hook) {
  std::lock_guard lock(hooks_mutex);
  hooks().emplace(next_hook_id, std::move(hook));
  return next_hook_id++;
}

void remove_abort_hook(int id) {
  std::lock_guard lock(hooks_mutex);
  hooks().erase(id);
}

void abort_job(const std::string& reason, int exit_code) {
  const int rank = world_rank_for_messages();
  if (rank >= 0) std::fprintf(stderr, "ditrun: error: %s (rank %d)\n", reason.c_str(), rank);
  else std::fprintf(stderr, "ditrun: error: %s\n", reason.c_str());
  std::fflush(stderr);
  {
    std::lock_guard lock(hooks_mutex);
    for (auto& [id, hook] : hooks()) {
      try {
        hook();
      } catch (...) {
        // Already failing: a hook that fails must not stop the abort.
      }
    }
  }
  if (rank >= 0) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace ditrun::comm
