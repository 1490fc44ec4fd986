"""The `lineside` command line and the tooling around the agent: doctor, demo, bench.

`main` is the console script (`lineside`, also `python -m agent.cli`): it parses the
arguments, configures logging and runs one command. The commands that are tools rather than
the agent live here too: `doctor` (checks a site; `doctor_mqtt` asks a broker, `findings` is
what a check found), `demo_plant` (the simulated plant: three nodes and the plant view) and
`demo` (one agent), with their `demo_broker`, `demo_scans` and `demo_postgres`; `bench` with
its runs (`bench_runs`, `bench_drain`, `trace_bench`, `bench_plant`), `history_commands`
(trace and report on a terminal), `plant` (`lineside plant …`) and `signals` (a command's main
coroutine until SIGTERM/SIGINT).
"""
