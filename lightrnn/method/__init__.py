"""LightRNN's own code, the paper's method: the 2-component model (`model`), its word table
(`word_table`), the bootstrap reallocation between rounds (`reallocate`, `losses`) with its
assignment solvers (`assignment/`), and the initial table (`initial_table`)."""
