"""SMS notifications to winners (simulated). Arrives with the notifications issue."""
