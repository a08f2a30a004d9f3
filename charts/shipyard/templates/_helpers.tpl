{{/*
Names. Kubernetes names are at most 63 characters (DNS labels), so every generated name is cut there
and never ends in "-".
*/}}
{{- define "shipyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shipyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<suffix>", the fullname cut so that the whole stays within 63 characters. */}}
{{- define "shipyard.componentName" -}}
{{- $suffix := .suffix }}
{{- $base := include "shipyard.fullname" .root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{- define "shipyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shipyard.labels" -}}
helm.sh/chart: {{ include "shipyard.chart" . }}
{{ include "shipyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shipyard
{{- end }}

{{- define "shipyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shipyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels plus app.kubernetes.io/component; call with (dict "root" $ "component" "predictor"). */}}
{{- define "shipyard.componentLabels" -}}
{{ include "shipyard.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The environment's namespace: settings.namespace, else the release namespace. */}}
{{- define "shipyard.namespace" -}}
{{- (.Values.settings).namespace | default .Release.Namespace }}
{{- end }}

{{- define "shipyard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "shipyard.settingsConfigMap" -}}
{{- include "shipyard.componentName" (dict "root" . "suffix" "settings") }}
{{- end }}

{{- define "shipyard.predictorServiceAccount" -}}
{{- .Values.serviceAccounts.predictor.name | default (include "shipyard.componentName" (dict "root" . "suffix" "predictor")) }}
{{- end }}

{{- define "shipyard.pipelineRunnerServiceAccount" -}}
{{- .Values.serviceAccounts.pipelineRunner.name | default (include "shipyard.componentName" (dict "root" . "suffix" "pipeline-runner")) }}
{{- end }}

{{- define "shipyard.deployerServiceAccount" -}}
{{- .Values.serviceAccounts.deployer.name | default (include "shipyard.componentName" (dict "root" . "suffix" "deployer")) }}
{{- end }}

{{/* The ClusterStorageContainer the InferenceService names (empty: KServe's default). */}}
{{- define "shipyard.storageContainerName" -}}
{{- if .Values.storageInitializer.name }}
{{- .Values.storageInitializer.name }}
{{- else if .Values.storageInitializer.create }}
{{- printf "%s-storage-initializer" (include "shipyard.namespace" . | trunc 43 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* Where the settings file is mounted, and the variable that points at it. */}}
{{- define "shipyard.settingsDir" -}}/etc/shipyard{{- end }}
{{- define "shipyard.settingsPath" -}}{{ include "shipyard.settingsDir" . }}/settings.yaml{{- end }}

{{/* Labels KServe puts on the predictor pods of the InferenceService (whoever applied it). */}}
{{- define "shipyard.predictorPodLabels" -}}
serving.kserve.io/inferenceservice: {{ .Values.model.name }}
component: predictor
{{- end }}

{{/* The serving settings with their defaults (shipyard.settings.ServingSettings). */}}
{{- define "shipyard.servingPort" -}}
{{- ((.Values.settings).serving).port | default 8080 }}
{{- end }}

{{/*
Environment variables filled from Secret keys: for each name in .names, the Secret and key that
settings.secrets names for it. A name settings.secrets does not know is an error, so a credential
can never silently go missing. Call with (dict "root" $ "names" (list ...) "where" "values.path").
*/}}
{{- define "shipyard.secretEnv" -}}
{{- $secrets := (.root.Values.settings).secrets | default dict }}
{{- $env := list }}
{{- range .names }}
{{- $ref := get $secrets . }}
{{- if not $ref }}
{{- fail (printf "%s: %s is not in settings.secrets (settings.secrets names the Secret key that fills each credential variable)" $.where .) }}
{{- end }}
{{- $env = append $env (dict "name" . "valueFrom" (dict "secretKeyRef" (dict "name" $ref.secret "key" $ref.key))) }}
{{- end }}
{{- if $env }}
{{- toYaml $env }}
{{- end }}
{{- end }}

{{/* Object-storage settings for S3 clients (what Settings.storage_env gives a process). */}}
{{- define "shipyard.storageEnv" -}}
- name: AWS_DEFAULT_REGION
  value: {{ ((.Values.settings).s3).region | default "us-east-1" | quote }}
{{- with ((.Values.settings).s3).endpoint_url }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Pod-level security context of every pod. */}}
{{- define "shipyard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context of every container (the `restricted` profile and more). */}}
{{- define "shipyard.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "shipyard.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "shipyard.settingsVolume" -}}
- name: settings
  configMap:
    name: {{ include "shipyard.settingsConfigMap" . }}
    items:
      - key: settings.yaml
        path: settings.yaml
{{- end }}

{{- define "shipyard.commonEnv" -}}
- name: SHIPYARD_SETTINGS
  value: {{ include "shipyard.settingsPath" . }}
- name: HOME
  value: /tmp
- name: FEAST_USAGE
  value: "False"
{{- end }}

{{/*
Checks the schema cannot express (it validates the values, not how they fit together). Included by
every template, so `helm template` and `helm install` fail with the same message.
*/}}
{{- define "shipyard.validate" -}}
{{- $ns := include "shipyard.namespace" . }}
{{- if and .Values.namespace.create (eq $ns .Release.Namespace) }}
{{- fail (printf "namespace.create: the release must be installed in another namespace than %s (Helm stores the release there before it creates the namespace), e.g. `--namespace shipyard-system`; or set namespace.create=false for an existing, labelled namespace" $ns) }}
{{- end }}
{{- $host := ((.Values.settings).serving).host | default "127.0.0.1" }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost" "::1") }}
{{- fail (printf "settings.serving.host: the predictor must listen on the pod's address, e.g. 0.0.0.0 (got %q: probes and clients could not reach it)" $host) }}
{{- end }}
{{- with ((.Values.settings).serving).grace_period_seconds }}
{{- if ge (float64 .) (float64 $.Values.servingRuntime.terminationGracePeriodSeconds) }}
{{- fail (printf "settings.serving.grace_period_seconds (%v) must be below servingRuntime.terminationGracePeriodSeconds (%v), or Kubernetes kills the server mid-drain" . $.Values.servingRuntime.terminationGracePeriodSeconds) }}
{{- end }}
{{- end }}
{{- $registry := .Values.settings.model_registry | default "" }}
{{- if and (or .Values.inferenceService.enabled .Values.storageInitializer.create) (not (hasPrefix "s3://" $registry)) }}
{{- fail (printf "settings.model_registry: a cluster serves versions from object storage, so it must be an s3:// URI (got %q)" $registry) }}
{{- end }}
{{- end }}
