#include <cstdio>
#include <iostream>

#include "launcher/commands.h"
#include "launcher/input_error.h"
#include "launcher/job.h"
#include "launcher/report.h"
#include "partition/plan_text.h"

namespace ditrun {

void print_input_error(const std::string& what, const std::string& where) {
  if (where.empty()) std::fprintf(stderr, "ditrun: error: %s\n", what.c_str());
  else std::fprintf(stderr, "ditrun: error: %s (%s)\n", what.c_str(), where.c_str());
  std::fflush(stderr);
}

int plan_command(const PlanOptions& o) {
  try {
    partition::LayoutRequest request;
    std::string source = "command line";
    if (o.job_file) {
      request = load_job(*o.job_file).parallel;
      source = *o.job_file;
    }
    auto take = [](int& field, const std::optional<int>& value) { if (value) field = *value; };
    take(request.replicas, o.replicas);
    take(request.cfg, o.cfg);
    take(request.pipefusion, o.pipefusion);
    take(request.ring, o.ring);
    take(request.ulysses, o.ulysses);
    take(request.vae_ranks, o.vae_ranks);
    take(request.text_ranks, o.text_ranks);
    if (!o.gpus) throw InputError("--gpus is required: how many GPUs (ranks) to lay out", "ditrun plan");
    if (o.launch != "block" && o.launch != "cyclic")
      throw InputError("--launch must be block or cyclic, got \"" + o.launch + "\"", "ditrun plan");
    const auto order = o.launch == "cyclic" ? partition::LaunchOrder::cyclic : partition::LaunchOrder::block;
    const partition::Plan plan = partition::make_plan(request, partition::Topology::uniform(*o.gpus, o.gpus_per_node, order));
    if (o.json) {
      std::cout << plan_to_json(plan).dump(2) << "\n";
    } else {
      std::cout << "plan for " << *o.gpus << " GPUs, " << o.gpus_per_node << " per node, " << o.launch
                << " launch (layout from " << source << ")\n"
                << partition::render_plan(plan, o.per_rank);
    }
    return 0;
  } catch (const InputError& e) {
    print_input_error(e.what(), e.where());
  } catch (const partition::LayoutError& e) {
    print_input_error(e.what(), e.key());
  }
  return 2;
}

}  // namespace ditrun
