output "corpus_bucket" {
  description = "Upload recordings here (gs://BUCKET/...)."
  value       = google_storage_bucket.corpus.name
}

output "outputs_bucket" {
  description = "Prepared data, models (models/current) and labels."
  value       = google_storage_bucket.outputs.name
}

output "temp_bucket" {
  description = "Dataflow temp and staging files, and the flex template specs (templates/)."
  value       = google_storage_bucket.temp.name
}

output "image_repository" {
  description = "Artifact Registry path: the _REPO substitution of infra/cloudbuild.yaml."
  value       = local.image_repo
}

output "sdk_image" {
  description = "Workers' image (--sdk_container_image)."
  value       = local.sdk_image
}

output "label_template_spec" {
  description = "Where `gcloud dataflow flex-template build` must write the label template spec."
  value       = local.label_template_spec
}

output "prepare_template_spec" {
  description = "Where `gcloud dataflow flex-template build` must write the prepare template spec."
  value       = local.prepare_template_spec
}

output "embed_template_spec" {
  description = "Where `gcloud dataflow flex-template build` must write the embed template spec."
  value       = local.embed_template_spec
}

output "worker_service_account" {
  description = "Run Dataflow jobs as this account (--service_account_email)."
  value       = google_service_account.worker.email
}

output "scheduler_service_account" {
  description = "Cloud Scheduler launches the nightly job as this account."
  value       = google_service_account.scheduler.email
}

output "scheduler_job" {
  description = "Run now: gcloud scheduler jobs run NAME --location REGION."
  value       = google_cloud_scheduler_job.label_incremental.name
}

output "nightly_launch_body" {
  description = "The JSON the scheduler job POSTs to flexTemplates:launch."
  value       = jsonencode(local.label_launch_body)
}
