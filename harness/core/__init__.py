"""The trainer's basics: config, seeding, data in memory, the model, one training run, the
run store."""
