//! The host training engine: owns the buffers a target network needs and runs core ops on them.
