"""Training the shipped Countdown model: the policy from solver solutions, then its SPRM head."""
