//! Loading NiNo weights from safetensors with clear errors.
