//! The NiNo nowcaster: scaling, edge features, the GNN and WNN+ models, and the horizon schedule.
