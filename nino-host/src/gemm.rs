//! A fast host matrix multiply behind the core `Gemm` trait.
