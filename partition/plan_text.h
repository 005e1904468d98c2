// The plan as a human reads it (`ditrun plan`, and the head of a job's log).
#pragma once
#include <string>

#include "partition/plan.h"

namespace ditrun::partition {

// Roles, mesh, every group with its ranks and hosts, and warnings. With per_rank, a table of every rank too.
std::string render_plan(const Plan& plan, bool per_rank);

}  // namespace ditrun::partition
