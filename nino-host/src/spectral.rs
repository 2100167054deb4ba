//! Run-time spectral features (LPE, eigenvector centrality) for any architecture.
