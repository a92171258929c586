"""Load generation: WorkloadSpec -> AIPerf run -> Metrics; sweeps and the SLA load search."""
