output "api_url" {
  description = "Base URL of the API (PGFLEET_API_URL for the Terraform provider)."
  value       = aws_apigatewayv2_api.http.api_endpoint
}

output "table_name" {
  value = aws_dynamodb_table.metadata.name
}

output "history_table_name" {
  value = aws_dynamodb_table.history.name
}

output "queue_url" {
  value = aws_sqs_queue.operations.url
}

output "schedule_group_name" {
  value = aws_scheduler_schedule_group.pgfleet.name
}

output "function_names" {
  value = { for key, fn in aws_lambda_function.function : key => fn.function_name }
}

output "rate_limit_table_name" {
  value = aws_dynamodb_table.rate_limits.name
}

output "events_url" {
  description = "The WebSocket URL of the real-time events (connect with ?token=<JWT>)."
  value       = "${aws_apigatewayv2_api.events.api_endpoint}/live"
}

output "reports_bucket" {
  value = aws_s3_bucket.reports.bucket
}
