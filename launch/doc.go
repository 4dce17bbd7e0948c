// Package launch holds what happens before a run is launched, for every command that
// launches or plans runs (train, sweep, plan): the data check with the real tokenizer,
// the memory estimate on the data's own lengths, the batch choice and the GPU
// pre-flight (Check), and the estimator's input from a resolved config. It returns
// typed errors (DataCheckError, InputError, the pre-flight's); the CLI decides exit
// codes. runner/ then prepares, starts, waits for and records the run.
package launch
