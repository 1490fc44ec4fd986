"""The plant view: plant-wide answers from the PostgreSQL store every agent delivers to.

`schema` owns the database layout (versioned migrations, the agent role's grants),
`partitions` the monthly partitions of `lineside.events` (made ahead, rows moved out of the
DEFAULT partition, retention by whole months), `store` the indexed look-ups by trace key.
`history` lets `agent.history`'s trace and report engines read the store across nodes
(`plant_trace`, `plant_report`); `reconciliation` works out every lot across nodes, `fleet`
what the store and the broker (`broker`: every agent's retained state) say of each node,
`fsma204` and `reports` render the lot reports. `config` is the plant view's own file,
`database` its connections, `app` and `server` the page and API of `lineside plant serve`.
`bench` and `bench_lookups` measure the postgres destination against the database's raw write
rates, and the look-ups over a large store.
"""
