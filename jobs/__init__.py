"""Ray entry points, one file per job. Each job starts (or joins) Ray and wires the fsnet library into it."""
