// Flow-matching solvers on latents held by a backend: UniPC (order 2, bh2, predict-x0, spec §6.4) and Euler.
// Every update is a linear combination of tensors, so a rank can step just its own token shard.
#pragma once
#include <memory>
#include <string>

#include "model/core/backend.h"
#include "model/sampling/schedule.h"

namespace ditrun::sampling {

class Solver {
 public:
  virtual ~Solver() = default;
  // x ← the sample at step i + 1, given the model velocity v at step i (x and v [shape], f32). Steps run in order
  // from 0; what a step queues depends only on i and the tensors (no state carried on the host), so a step can be
  // recorded and replayed (Backend::run_recorded), and a solver restarts at step 0 for a new latent.
  virtual void step(int i, const Tensor& v, Tensor& x) = 0;
};

// name: "unipc" or "euler". Works on tensors of `shape` on `backend`; the schedule's sigmas drive it.
std::unique_ptr<Solver> make_solver(const std::string& name, Backend& backend, const Schedule& schedule,
                                    const Shape& shape);

}  // namespace ditrun::sampling
