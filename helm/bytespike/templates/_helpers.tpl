{{/*
Shared names, labels and pod snippets. Helpers that concern one component take
(dict "ctx" $ "component" "<edge|auth|router|metering>").
*/}}

{{- define "bytespike.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bytespike.fullname" -}}
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

{{/* "<fullname>-<component>": the Deployment, Service and DNS name of a component. */}}
{{- define "bytespike.componentName" -}}
{{- printf "%s-%s" (include "bytespike.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-wide selector labels; with a component, that component's pods only. */}}
{{- define "bytespike.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bytespike.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "bytespike.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bytespike.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: bytespike
{{- end }}

{{- define "bytespike.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* "host:port" of a gRPC component's Service, as the edge dials it. */}}
{{- define "bytespike.grpcTarget" -}}
{{- printf "%s:%v" (include "bytespike.componentName" .) (index .ctx.Values .component).port }}
{{- end }}

{{/* ---- Secrets and ConfigMaps: the chart's own or the operator's existing ones ---- */}}

{{- define "bytespike.keyHashSecretName" -}}
{{- .Values.keyHashSecret.existingSecret | default (printf "%s-key-hash" (include "bytespike.fullname" .)) }}
{{- end }}

{{- define "bytespike.adminTokenSecretName" -}}
{{- .Values.edge.admin.existingSecret | default (printf "%s-edge-admin" (include "bytespike.fullname" .)) }}
{{- end }}

{{- define "bytespike.providerKeysSecretName" -}}
{{- .Values.providers.existingSecret | default (printf "%s-provider-keys" (include "bytespike.fullname" .)) }}
{{- end }}

{{- define "bytespike.databaseSecretName" -}}
{{- .Values.database.existingSecret | default (printf "%s-database" (include "bytespike.fullname" .)) }}
{{- end }}

{{- define "bytespike.catalogConfigMapName" -}}
{{- .Values.catalog.existingConfigMap | default (printf "%s-catalog" (include "bytespike.fullname" .)) }}
{{- end }}

{{/* True when the key-hash secret reaches the pods (always, outside development). */}}
{{- define "bytespike.hasKeyHashSecret" -}}
{{- if or .Values.keyHashSecret.existingSecret .Values.keyHashSecret.value }}true{{ end }}
{{- end }}

{{- define "bytespike.hasAdminToken" -}}
{{- if or .Values.edge.admin.existingSecret .Values.edge.admin.token }}true{{ end }}
{{- end }}

{{/* True when auth and metering use PostgreSQL rather than per-pod SQLite. */}}
{{- define "bytespike.hasDatabase" -}}
{{- if or .Values.database.existingSecret (and .Values.database.authUrl .Values.database.meteringUrl) }}true{{ end }}
{{- end }}

{{/* Rolls pods when a Secret the chart owns changes (existing Secrets need a restart). */}}
{{- define "bytespike.secretsChecksum" -}}
{{- include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end }}

{{/* ---- Pod snippets ---- */}}

{{/* Env every service reads: BYTESPIKE_<SVC>_HOST/PORT/ENVIRONMENT/LOG_LEVEL, the NATS URL,
and the OTEL_* tracing variables when tracing.otlpEndpoint is set. */}}
{{- define "bytespike.commonEnv" -}}
{{- $prefix := printf "BYTESPIKE_%s_" (upper .component) -}}
- name: {{ $prefix }}HOST
  value: "0.0.0.0"
- name: {{ $prefix }}PORT
  value: {{ .port | quote }}
- name: {{ $prefix }}ENVIRONMENT
  value: {{ .ctx.Values.environment | quote }}
- name: {{ $prefix }}LOG_LEVEL
  value: {{ .ctx.Values.logLevel | quote }}
{{- if .ctx.Values.nats.existingSecret }}
- name: BYTESPIKE_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .ctx.Values.nats.existingSecret }}
      key: {{ .ctx.Values.nats.secretKey }}
{{- else }}
- name: BYTESPIKE_NATS_URL
  value: {{ .ctx.Values.nats.url | quote }}
{{- end }}
{{- with .ctx.Values.tracing }}
{{- if .otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
- name: OTEL_EXPORTER_OTLP_INSECURE
  value: {{ .insecure | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,deployment.environment.name=%s" $.ctx.Release.Namespace $.ctx.Values.environment | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bytespike.keyHashSecretEnv" -}}
{{- if include "bytespike.hasKeyHashSecret" . -}}
- name: BYTESPIKE_KEY_HASH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "bytespike.keyHashSecretName" . }}
      key: {{ .Values.keyHashSecret.secretKey }}
{{- end }}
{{- end }}

{{/* BYTESPIKE_<SVC>_DATABASE_URL: a DSN from the database Secret, or SQLite in the data dir. */}}
{{- define "bytespike.databaseEnv" -}}
- name: {{ printf "BYTESPIKE_%s_DATABASE_URL" (upper .component) }}
{{- if include "bytespike.hasDatabase" .ctx }}
  valueFrom:
    secretKeyRef:
      name: {{ include "bytespike.databaseSecretName" .ctx }}
      key: {{ index .ctx.Values.database (printf "%sUrlKey" .component) }}
{{- else }}
  value: {{ printf "sqlite:////var/lib/bytespike/%s.db" .component | quote }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every Deployment; `svc` is the component's values. */}}
{{- define "bytespike.podSpec" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "bytespike.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{/* The only writable paths under a read-only root: /tmp and the data dir (SQLite). */}}
{{- define "bytespike.scratchVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/bytespike
{{- end }}

{{- define "bytespike.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.scratch.dataSizeLimit }}
{{- end }}

{{/* Native gRPC probes on the standard grpc.health.v1 service; startup covers migrations. */}}
{{- define "bytespike.grpcProbes" -}}
startupProbe:
  grpc:
    port: {{ . }}
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc:
    port: {{ . }}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ . }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* Fails the render on settings the services would refuse at start-up, with the fix. */}}
{{- define "bytespike.validate" -}}
{{- if ne .Values.environment "development" }}
{{- if not (include "bytespike.hasKeyHashSecret" .) }}
{{- fail "keyHashSecret.value or keyHashSecret.existingSecret is required outside development (e.g. --set keyHashSecret.value=$(openssl rand -base64 48))" }}
{{- end }}
{{- if not (include "bytespike.hasAdminToken" .) }}
{{- fail "edge.admin.token or edge.admin.existingSecret is required outside development" }}
{{- end }}
{{- end }}
{{- if and .Values.keyHashSecret.value (not .Values.keyHashSecret.existingSecret) (lt (len .Values.keyHashSecret.value) 16) }}
{{- fail "keyHashSecret.value must be at least 16 characters" }}
{{- end }}
{{- if and (not .Values.database.existingSecret) (ne (empty .Values.database.authUrl) (empty .Values.database.meteringUrl)) }}
{{- fail "set both database.authUrl and database.meteringUrl (or database.existingSecret)" }}
{{- end }}
{{- if and (not (include "bytespike.hasDatabase" .)) (or (gt (int .Values.auth.replicaCount) 1) (gt (int .Values.metering.replicaCount) 1)) }}
{{- fail "auth and metering on SQLite keep their data in the pod: run one replica each, or set database.* PostgreSQL DSNs" }}
{{- end }}
{{- if and (gt (int .Values.metering.replicaCount) 1) (not .Values.metering.redisUrl) }}
{{- fail "several metering replicas need shared throttling windows: set metering.redisUrl" }}
{{- end }}
{{- end }}
