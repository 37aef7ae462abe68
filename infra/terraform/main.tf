# earmark on Google Cloud: buckets, an image repository, a least-privilege worker service
# account, and a Cloud Scheduler job that launches the `earmark label` flex template with
# incremental = "true" every night. See docs/dataflow.md for the whole procedure.

locals {
  bucket_prefix = "${var.name_prefix}-${var.project}"
  image_repo    = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
  sdk_image     = "${local.image_repo}/earmark-sdk:${var.image_tag}"

  # Template specs written by `gcloud dataflow flex-template build` (docs/dataflow.md).
  template_dir          = "gs://${google_storage_bucket.temp.name}/templates"
  label_template_spec   = "${local.template_dir}/label.json"
  prepare_template_spec = "${local.template_dir}/prepare.json"
  embed_template_spec   = "${local.template_dir}/embed.json"

  model_path  = var.model_path != "" ? var.model_path : "gs://${google_storage_bucket.outputs.name}/models/current"
  input_path  = var.input_path != "" ? var.input_path : "gs://${google_storage_bucket.corpus.name}/"
  output_path = var.output_path != "" ? var.output_path : "gs://${google_storage_bucket.outputs.name}/labels"

  # Body of the nightly flexTemplates:launch request. The job name is fixed on purpose:
  # Dataflow refuses a second active job of the same name, so a run that is still going
  # when the next one is due is not overlapped (the ledger allows one writer at a time).
  label_launch_body = {
    launchParameter = {
      jobName              = "${var.name_prefix}-label-incremental"
      containerSpecGcsPath = local.label_template_spec
      parameters = {
        model       = local.model_path
        input       = local.input_path
        output      = local.output_path
        formats     = var.formats
        incremental = "true"
      }
      environment = {
        serviceAccountEmail = google_service_account.worker.email
        tempLocation        = "gs://${google_storage_bucket.temp.name}/tmp"
        stagingLocation     = "gs://${google_storage_bucket.temp.name}/staging"
        machineType         = var.machine_type
        maxWorkers          = var.max_workers
        sdkContainerImage   = local.sdk_image
        ipConfiguration     = var.private_worker_ips ? "WORKER_IP_PRIVATE" : "WORKER_IP_UNSPECIFIED"
        subnetwork          = var.subnetwork != "" ? var.subnetwork : null # null: not set
      }
    }
  }
}

# --- APIs ------------------------------------------------------------------------------

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "iam.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# --- Buckets ---------------------------------------------------------------------------

resource "google_storage_bucket" "corpus" {
  name                        = "${local.bucket_prefix}-corpus"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_storage_bucket" "outputs" {
  name                        = "${local.bucket_prefix}-outputs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true # ledger.json and segments.csv are rewritten by every incremental run
  }
}

resource "google_storage_bucket" "temp" {
  name                        = "${local.bucket_prefix}-temp"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  lifecycle_rule {
    condition {
      age            = var.temp_retention_days
      matches_prefix = ["tmp/", "staging/"]
    }
    action {
      type = "Delete"
    }
  }
}

# --- Image repository (SDK image and flex template images) -----------------------------

resource "google_artifact_registry_repository" "images" {
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "earmark worker SDK image and flex template launcher images"
  depends_on    = [google_project_service.apis]
}

# --- Worker service account: reads the corpus, writes outputs, nothing project-wide ------

resource "google_service_account" "worker" {
  account_id   = "${var.name_prefix}-worker"
  display_name = "earmark Dataflow workers"
}

resource "google_project_iam_member" "worker_dataflow" {
  project = var.project
  role    = "roles/dataflow.worker"
  member  = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_storage_bucket_iam_member" "worker_reads_corpus" {
  bucket = google_storage_bucket.corpus.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_storage_bucket_iam_member" "worker_writes_outputs" {
  bucket = google_storage_bucket.outputs.name
  role   = "roles/storage.objectAdmin" # models are read from here too
  member = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_storage_bucket_iam_member" "worker_uses_temp" {
  bucket = google_storage_bucket.temp.name
  role   = "roles/storage.objectAdmin" # staging, temp files, template specs (read)
  member = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_storage_bucket_iam_member" "worker_reads_temp_bucket" {
  bucket = google_storage_bucket.temp.name
  role   = "roles/storage.legacyBucketReader" # bucket metadata Beam reads when staging
  member = "serviceAccount:${google_service_account.worker.email}"
}

resource "google_artifact_registry_repository_iam_member" "worker_pulls_images" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.worker.email}"
}

# --- Scheduler service account: may launch Dataflow jobs that run as the worker ----------

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "earmark nightly label launcher (Cloud Scheduler)"
}

resource "google_project_iam_member" "scheduler_launches_dataflow" {
  project = var.project
  role    = "roles/dataflow.developer"
  member  = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_service_account_iam_member" "scheduler_acts_as_worker" {
  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_storage_bucket_iam_member" "scheduler_reads_template_specs" {
  bucket = google_storage_bucket.temp.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- Nightly incremental labeling --------------------------------------------------------

resource "google_cloud_scheduler_job" "label_incremental" {
  name             = "${var.name_prefix}-label-incremental"
  description      = "Launch the earmark label flex template (incremental) on the corpus bucket."
  region           = var.region
  schedule         = var.schedule
  time_zone        = var.time_zone
  paused           = var.paused
  attempt_deadline = "320s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://dataflow.googleapis.com/v1b3/projects/${var.project}/locations/${var.region}/flexTemplates:launch"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode(local.label_launch_body))
    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.scheduler_launches_dataflow,
    google_service_account_iam_member.scheduler_acts_as_worker,
  ]
}
