//! nino-cuda: GPU execution of nino through cudarc (driver loaded at run time).
#![warn(missing_docs)]
