"""Studies over many versions of one scenario: sweeps, tuning, sensitivity, and where they run.

One module per concept, as in Optuna's packages:

- `params`: command-line specs (`KEY=V1,V2`, `KEY=lo:hi`, `KPI>=X`, `KPI:max`) and the schema
  check of every point before anything runs;
- `runs`: points × replications through an executor with common random numbers, and their
  results (`RunOutcome`, `PointResult`, `SweepResult`);
- `executor`: local processes or a Dask cluster behind one `map_unordered`;
- `sweep`, `tune`, `sensitivity`: the three studies;
- `plots`: their figures (plots read results; studies import plots, never the reverse).
"""
