//! History checking: linearizability of key-value histories (per-key Wing–Gong–Lowe search).
//! Pure code, shared by the simulation and by `shoal chaos`.
