"""The GraphQL layer: strawberry types, queries, mutations, dataloaders and errors."""
