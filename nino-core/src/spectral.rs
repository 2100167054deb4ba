//! Spectral node features of the neural graph (Laplacian eigenvectors, eigenvector centrality), tables made at build time.
