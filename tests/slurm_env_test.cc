// Where a rank is, from its launcher's environment (srun, mpirun inside or outside a Slurm job), and the checks
// against what MPI says. The variables below are those Slurm 22.05 and Open MPI 4.1 set (seen in their jobs).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "comm/mpi_runtime.h"

using ditrun::comm::check_launch_place;
using ditrun::comm::LaunchPlace;
using ditrun::comm::parse_tasks_per_node;
using ditrun::comm::read_launch_place;

namespace {

using Env = std::map<std::string, std::string>;

LaunchPlace place_of(const Env& env) {
  return read_launch_place([&](const char* name) -> const char* {
    const auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

// The batch script of a 4-task job: it has SLURM_PROCID and SLURM_NTASKS, but no step.
const Env kBatch = {{"SLURM_JOB_ID", "12"}, {"SLURM_PROCID", "0"},  {"SLURM_NTASKS", "4"},
                    {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "0"}, {"SLURM_TASKS_PER_NODE", "4"}};

Env with(Env env, const Env& more) {
  for (const auto& [k, v] : more) env[k] = v;
  return env;
}

}  // namespace

TEST(SlurmEnv, SrunTaskTakesItsPlaceFromSlurm) {
  // Task 5 of an 8-task step over two nodes of 4: the second task on node 1.
  const auto p = place_of(with(kBatch, {{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"},
                                        {"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_NODEID", "1"},
                                        {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"}}));
  EXPECT_EQ(p.launcher, "srun");
  EXPECT_EQ(p.rank, 5);
  EXPECT_EQ(p.size, 8);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_size, 4);
  EXPECT_EQ(p.node, 1);
  EXPECT_EQ(p.local_rank_variable, "SLURM_LOCALID");
  EXPECT_EQ(check_launch_place(p, 5, 8), "");
}

TEST(SlurmEnv, StepTaskCountWinsOverTheAllocations) {
  // srun -n 2 inside a 4-task allocation: the step has 2 tasks.
  const auto p = place_of(with(kBatch, {{"SLURM_STEP_ID", "3"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "2"},
                                        {"SLURM_LOCALID", "1"}}));
  EXPECT_EQ(p.size, 2);
  EXPECT_EQ(check_launch_place(p, 1, 2), "");
  // Without SLURM_STEP_NUM_TASKS (older Slurm), SLURM_NTASKS is the count srun exports to its tasks.
  const auto old = place_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}});
  EXPECT_EQ(old.size, 3);
}

TEST(SlurmEnv, MpirunInsideABatchScriptIgnoresTheBatchStepsSlurmVariables) {
  // mpirun in the batch script: its processes inherit the batch step's SLURM_PROCID=0, SLURM_NTASKS=4.
  const auto p = place_of(with(kBatch, {{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}}));
  EXPECT_EQ(p.launcher, "mpirun");
  EXPECT_EQ(p.rank, 2);
  EXPECT_EQ(p.size, 2);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_size, 2);
  EXPECT_EQ(p.node, -1);
  EXPECT_EQ(p.local_rank_variable, "OMPI_COMM_WORLD_LOCAL_RANK");
}

TEST(SlurmEnv, BatchScriptOrPlainProcessHasNoLauncher) {
  for (const Env& env : {kBatch, Env{}}) {
    const auto p = place_of(env);
    EXPECT_EQ(p.launcher, "none");
    EXPECT_EQ(p.rank, -1);
    EXPECT_EQ(p.local_rank, -1);
    EXPECT_EQ(p.local_rank_variable, "");
    EXPECT_EQ(check_launch_place(p, 0, 1), "");  // a single process in a 4-task job is not an error
  }
}

TEST(SlurmEnv, SrunWithoutTheMpiPluginIsOneLineSayingWhatToDo) {
  // Each of 4 tasks initialised MPI alone: a world of 1.
  const auto p = place_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "2"}, {"SLURM_STEP_NUM_TASKS", "4"}});
  const std::string problem = check_launch_place(p, 0, 1);
  EXPECT_NE(problem.find("srun started 4 tasks but MPI sees each as a job of 1 rank (this is task 2)"),
            std::string::npos)
      << problem;
  EXPECT_NE(problem.find("--mpi=pmix"), std::string::npos);
  EXPECT_EQ(problem.find('\n'), std::string::npos);
}

TEST(SlurmEnv, MismatchesWithMpiAreErrors) {
  const auto mpirun = place_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"}});
  EXPECT_NE(check_launch_place(mpirun, 0, 2).find("mpirun started 4 processes but MPI sees 2 ranks"),
            std::string::npos);
  EXPECT_EQ(check_launch_place(mpirun, 3, 4), "mpirun says this process is rank 1 but MPI says rank 3");
  const auto srun = place_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "4"},
                              {"SLURM_LOCALID", "5"}, {"SLURM_NODEID", "0"}, {"SLURM_STEP_TASKS_PER_NODE", "4"}});
  EXPECT_EQ(check_launch_place(srun, 1, 4), "srun gives local rank 5 of only 4 on this host");
}

TEST(SlurmEnv, VariablesThatDoNotParseAreNamed) {
  for (const char* bad : {"", "x", "-1", "2a", "99999999999"}) {
    const auto p = place_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", bad}, {"SLURM_STEP_NUM_TASKS", "4"}});
    EXPECT_EQ(check_launch_place(p, 0, 4), std::string("SLURM_PROCID=\"") + bad + "\" is not a non-negative integer");
  }
  const auto p = place_of({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                           {"OMPI_COMM_WORLD_LOCAL_RANK", "zero"}});
  EXPECT_EQ(check_launch_place(p, 0, 2), "OMPI_COMM_WORLD_LOCAL_RANK=\"zero\" is not a non-negative integer");
}

TEST(SlurmEnv, TasksPerNodeLists) {
  EXPECT_EQ(parse_tasks_per_node("4"), (std::vector<int>{4}));
  EXPECT_EQ(parse_tasks_per_node("4(x2)"), (std::vector<int>{4, 4}));
  EXPECT_EQ(parse_tasks_per_node("2(x3),1"), (std::vector<int>{2, 2, 2, 1}));
  EXPECT_EQ(parse_tasks_per_node("8,8,7"), (std::vector<int>{8, 8, 7}));
  for (const char* bad : {"x", "4(2)", "4(x)", "4(x0)", "4,", ",4", "4(x2"})
    EXPECT_TRUE(parse_tasks_per_node(bad).empty()) << bad;
  // A node index past the list leaves the local size to MPI.
  const auto p = place_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "0"}, {"SLURM_NODEID", "3"},
                           {"SLURM_STEP_TASKS_PER_NODE", "4(x2)"}});
  EXPECT_EQ(p.local_size, -1);
}
