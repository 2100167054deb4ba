//! Host-side NiNo nowcaster: owns the weights, graph features and buffers the core model needs.
