#include "model/sampling/solver.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

namespace ditrun::sampling {

namespace {

// λ(σ) = ln α − ln σ with α = 1 − σ (spec §6.1).
double lambda_of(double sigma) { return std::log(1.0 - sigma) - std::log(sigma); }

class EulerSolver final : public Solver {
 public:
  EulerSolver(Backend& backend, const Schedule& schedule) : be_(backend), sigmas_(schedule.sigmas) {}
  void step(int i, const Tensor& v, Tensor& x) override {
    const float c[2] = {1.f, static_cast<float>(sigmas_[i + 1] - sigmas_[i])};
    const Tensor* in[2] = {&x, &v};
    be_.lincomb(x, c, in);
  }

 private:
  Backend& be_;
  std::vector<double> sigmas_;
};

// UniPC with solver_order 2, B(h) = expm1(h) (bh2), lower_order_final, corrector on every step but the first.
// Everything a step does follows from its index: the data prediction of step i goes to history slot i mod 3 (so
// steps i − 1 and i − 2 are in the other two) and the orders come from i, not from state the steps carry. A step
// replayed from a recording, without this code running, leaves nothing behind.
class UniPcSolver final : public Solver {
 public:
  UniPcSolver(Backend& backend, const Schedule& schedule, const Shape& shape)
      : be_(backend), sigmas_(schedule.sigmas), steps_(schedule.steps()) {
    for (Tensor& m : history_) m = be_.allocate(shape, DType::f32);
    last_sample_ = be_.allocate(shape, DType::f32);
  }

  void step(int i, const Tensor& v, Tensor& x) override {
    const double sigma_s = sigmas_[i];
    Tensor& m_now = prediction(i);
    // 1. Data prediction m_i = x − σ·v.
    {
      const float c[2] = {1.f, static_cast<float>(-sigma_s)};
      const Tensor* in[2] = {&x, &v};
      be_.lincomb(m_now, c, in);
    }
    // 2. Corrector (i ≥ 1): refine x with the new prediction, using the previous step's order.
    if (i >= 1) correct(i, x);
    // 3. Predictor from σ_i to σ_{i+1}; the corrected x is kept for the next corrector.
    be_.copy(last_sample_, x);
    predict(i, order(i), x);
  }

 private:
  // The predictor's order at step i: 1 for the first step and the last (lower_order_final), else 2.
  int order(int i) const { return std::min({2, steps_ - i, std::min(i, 2) + 1}); }
  // The data prediction of step i (its slot is reused by step i + 3).
  Tensor& prediction(int i) { return history_[static_cast<size_t>(i % 3)]; }

  void correct(int i, Tensor& x) {
    const Tensor& m_now = prediction(i);
    const Tensor& m_prev = prediction(i - 1);
    const double sigma_prev = sigmas_[i - 1], sigma_now = sigmas_[i];
    const double alpha_now = 1.0 - sigma_now;
    const double h = lambda_of(sigma_now) - lambda_of(sigma_prev);
    const double hh = -h;
    const double phi1 = std::expm1(hh);
    const double bh = std::expm1(hh);
    // x̂ = (σ_i/σ_{i−1})·x_prev − α_i·φ1·m0, with m0 = m_{i−1}; then the correction terms.
    const double base_x = sigma_now / sigma_prev, base_m0 = -alpha_now * phi1;
    if (order(i - 1) == 1 || i < 2) {
      // x = x̂ − α·B·0.5·(m_i − m0)
      const double r = -alpha_now * bh * 0.5;
      const float c[3] = {static_cast<float>(base_x), static_cast<float>(base_m0 - r), static_cast<float>(r)};
      const Tensor* in[3] = {&last_sample_, &m_prev, &m_now};
      be_.lincomb(x, c, in);
      return;
    }
    const Tensor& m_prev2 = prediction(i - 2);
    // Order 2: r = (λ_{i−2} − λ_{i−1})/h, D = (m_{i−2} − m0)/r, solve [[1,1],[r,1]]·ρ = b.
    const double rk = (lambda_of(sigmas_[i - 2]) - lambda_of(sigma_prev)) / h;
    const double g1 = phi1 / hh - 1.0;
    const double g2 = g1 / hh - 0.5;
    const double b1 = g1 * 1.0 / bh, b2 = g2 * 2.0 / bh;
    const double det = 1.0 - rk;  // det [[1,1],[rk,1]]
    const double rho0 = (b1 - b2) / det, rho1 = (b2 - rk * b1) / det;
    // x = x̂ − α·B·(ρ0·(m_{i−2} − m0)/rk + ρ1·(m_i − m0))
    const double k = -alpha_now * bh;
    const double c_m2 = k * rho0 / rk, c_now = k * rho1, c_m0 = base_m0 - c_m2 - c_now;
    const float c[4] = {static_cast<float>(base_x), static_cast<float>(c_m0), static_cast<float>(c_m2),
                        static_cast<float>(c_now)};
    const Tensor* in[4] = {&last_sample_, &m_prev, &m_prev2, &m_now};
    be_.lincomb(x, c, in);
  }

  void predict(int i, int order, Tensor& x) {
    const Tensor& m_now = prediction(i);
    const double sigma_s = sigmas_[i], sigma_t = sigmas_[i + 1];
    const double alpha_t = 1.0 - sigma_t;
    if (sigma_t == 0.0) {  // last step: λ_t = +∞, the update reduces to the data prediction
      be_.copy(x, m_now);
      return;
    }
    const double h = lambda_of(sigma_t) - lambda_of(sigma_s);
    const double hh = -h;
    const double phi1 = std::expm1(hh);
    const double bh = std::expm1(hh);
    const double c_x = sigma_t / sigma_s;
    double c_now = -alpha_t * phi1;
    if (order == 2) {
      // D = (m_{i−1} − m_i)/r with r = (λ_{i−1} − λ_s)/h; x' −= α_t·B·0.5·D.
      const Tensor& m_prev = prediction(i - 1);
      const double rk = (lambda_of(sigmas_[i - 1]) - lambda_of(sigma_s)) / h;
      const double c_d = -alpha_t * bh * 0.5 / rk;
      c_now -= c_d;
      const float c[3] = {static_cast<float>(c_x), static_cast<float>(c_now), static_cast<float>(c_d)};
      const Tensor* in[3] = {&x, &m_now, &m_prev};
      be_.lincomb(x, c, in);
      return;
    }
    const float c[2] = {static_cast<float>(c_x), static_cast<float>(c_now)};
    const Tensor* in[2] = {&x, &m_now};
    be_.lincomb(x, c, in);
  }

  Backend& be_;
  std::vector<double> sigmas_;
  int steps_;
  std::array<Tensor, 3> history_;  // data predictions of the last three steps, by step index mod 3
  Tensor last_sample_;
};

}  // namespace

std::unique_ptr<Solver> make_solver(const std::string& name, Backend& backend, const Schedule& schedule,
                                    const Shape& shape) {
  if (name == "unipc") return std::make_unique<UniPcSolver>(backend, schedule, shape);
  if (name == "euler") return std::make_unique<EulerSolver>(backend, schedule);
  throw std::invalid_argument("unknown solver \"" + name + "\" (unipc or euler)");
}

}  // namespace ditrun::sampling
