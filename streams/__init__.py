"""The aggregator: a Faust app that turns processed frames back into videos."""
