"""The gRPC client of the sidecar: errors, endpoint choice, one attempt's logic; sync and async shells."""
