//! The calanque operator (issue 7): the `PbxCluster` custom resource and its reconciler.
