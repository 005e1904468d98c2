// The backend a test asks for by name ("cpu" or "cuda"), or why it cannot have it on this machine (a build without
// CUDA, no GPU): the test then skips with that reason, e.g.
//   auto [be, why] = test_backend("cuda");
//   if (!be) GTEST_SKIP() << why;
#pragma once
#include <exception>
#include <memory>
#include <string>

#include "model/core/backend.h"

namespace ditrun {

struct TestBackend {
  std::unique_ptr<Backend> backend;
  std::string unavailable;  // why backend is null
};

inline TestBackend test_backend(const std::string& name) {
  if (name != "cuda") return {make_cpu_backend(), {}};
  if (!cuda_backend_built()) return {nullptr, "built without CUDA"};
  try {
    return {make_cuda_backend(), {}};
  } catch (const std::exception& e) {
    return {nullptr, std::string("skipped: no CUDA device (") + e.what() + ")"};
  }
}

}  // namespace ditrun
