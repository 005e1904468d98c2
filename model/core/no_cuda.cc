// A build without CUDA: the CUDA backend is absent and says so.
#include <stdexcept>

#include "model/core/backend.h"

namespace ditrun {

std::unique_ptr<Backend> make_cuda_backend() { throw std::runtime_error("this ditrun was built without CUDA"); }
bool cuda_backend_built() { return false; }

}  // namespace ditrun
