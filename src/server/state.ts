/** What the REST and gRPC servers share about the server as a whole. */
export interface ServingState {
  /** Ready for inference: false before listening and while draining. */
  ready: boolean;
  /** Shutting down: readiness off, connections close as their requests finish. */
  draining: boolean;
  /** Requests being handled, over both protocols. */
  inFlight: number;
}
