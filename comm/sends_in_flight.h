// Non-blocking sends of host buffers (MPI_Isend on the world communicator), so that a rank can hand data to several
// others and go on working: the text role sends prompt i's embeddings to the DiT ranks and encodes prompt i + 1
// while they are still denoising. The caller keeps every buffer alive and unchanged until the sends that read it
// are done (wait_all); one buffer may feed several sends at once (MPI 3.0 allows concurrent reads of a send buffer).
#pragma once
#include <mpi.h>

#include <vector>

namespace ditrun::comm {

class SendsInFlight {
 public:
  SendsInFlight() = default;
  SendsInFlight(const SendsInFlight&) = delete;
  SendsInFlight& operator=(const SendsInFlight&) = delete;
  ~SendsInFlight();  // the sends must have been waited for (else the job is ended: buffers would be read freed)

  void send_floats(const std::vector<float>& data, int to, int tag);
  // Lets MPI move data without blocking (MPI_Testall) and forgets the sends that are done; a rank that does no
  // other MPI call while it computes calls this between pieces of work, so transports that need the sender's
  // progress go on.
  void progress();
  // Blocks until every send so far is done.
  void wait_all();
  size_t in_flight() const { return requests_.size(); }

 private:
  std::vector<MPI_Request> requests_;
};

}  // namespace ditrun::comm
