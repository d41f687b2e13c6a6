-- Tokens add up over attempts: a retried run spent what every attempt spent.
UPDATE runs SET input_tokens = input_tokens + $2, output_tokens = output_tokens + $3 WHERE id = $1
