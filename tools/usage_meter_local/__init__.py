"""Local tooling: template.yaml reader, DynamoDB Local runner, local HTTP gateway, seeding."""
