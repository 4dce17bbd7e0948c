// Package launch owns one training run's life, for every command that launches or
// plans runs: Train prepares the run, checks it before launch (the data check with the
// real tokenizer, the memory estimate on the data's own lengths, the batch choice, the
// GPU pre-flight), starts it through its driver and follows it to its end (signals
// forwarded, a resumed trainer held to its checkpoint's step, the GPU sampled). Check,
// CheckData and Start are the pieces sweep, plan and reproduce use on their own. It
// returns typed errors (InputError, DataCheckError, the pre-flight's); the CLI decides
// exit codes. runner/ holds the mechanics below it: run dirs, manifests, the wait.
package launch
