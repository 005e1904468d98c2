#include "comm/error.h"

#include <mpi.h>

namespace ditrun::comm {

int world_rank_for_messages() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

void throw_call_error(const char* api, const char* call, const std::string& detail, const char* file, int line) {
  std::string where = std::string(file);
  if (auto slash = where.rfind('/'); slash != std::string::npos) where = where.substr(slash + 1);
  throw CommError(std::string(api) + " call failed: " + call + ": " + detail + " at " + where + ":" +
                  std::to_string(line));
}

void check_mpi(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  throw_call_error("MPI", call, length ? std::string(text, length) : "error " + std::to_string(code), file, line);
}

}  // namespace ditrun::comm
