//! IDX image datasets (Fashion-MNIST and friends): loading, normalisation and seeded batching.
