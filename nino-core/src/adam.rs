//! Adam and AdamW with PyTorch semantics over flat parameter, gradient and moment slices.
