{{/*
Names, labels and the values every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "calanque.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, or the release name when it already holds
the chart name (release "calanque" gives "calanque-operator", not "calanque-calanque-operator"),
or <release>-<chart>.
*/}}
{{- define "calanque.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "calanque.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "calanque.labels" -}}
helm.sh/chart: {{ include "calanque.chart" . }}
{{ include "calanque.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: calanque
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels selectors use: stable across upgrades. */}}
{{- define "calanque.selectorLabels" -}}
app.kubernetes.io/name: {{ include "calanque.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's objects. */}}
{{- define "calanque.operator.fullname" -}}
{{- printf "%s-operator" (include "calanque.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "calanque.operator.labels" -}}
{{ include "calanque.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "calanque.operator.selectorLabels" -}}
{{ include "calanque.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "calanque.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "calanque.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "calanque.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The datacenters the operator runs in, as JSON {"items": [{"name", "nodeSelector"}]}:
operator.datacenters, else the serving datacenters of the PbxCluster the chart creates, else
one entry with no name (a single Deployment).
*/}}
{{- define "calanque.operator.datacenters" -}}
{{- $items := list }}
{{- if .Values.operator.datacenters }}
{{- range .Values.operator.datacenters }}
{{- $items = append $items (dict "name" .name "nodeSelector" (.nodeSelector | default dict)) }}
{{- end }}
{{- else if .Values.pbxCluster.create }}
{{- range .Values.pbxCluster.spec.datacenters }}
{{- if eq .role "serving" }}
{{- $items = append $items (dict "name" .name "nodeSelector" (.nodeSelector | default dict)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $items }}
{{- $items = list (dict "name" "" "nodeSelector" dict) }}
{{- end }}
{{- dict "items" $items | toJson }}
{{- end }}

{{/* Total operator pods over every Deployment. */}}
{{- define "calanque.operator.totalReplicas" -}}
{{- $dcs := (include "calanque.operator.datacenters" . | fromJson).items }}
{{- mul (len $dcs) .Values.operator.replicaCount }}
{{- end }}

{{/*
The Secrets the operator may read, as JSON {"names": [...]}: rbac.tlsSecretNames and the
tlsSecret names of the PbxCluster the chart creates, sorted, without duplicates.
*/}}
{{- define "calanque.tlsSecretNames" -}}
{{- $names := .Values.rbac.tlsSecretNames | default list }}
{{- if .Values.pbxCluster.create }}
{{- $spec := .Values.pbxCluster.spec }}
{{- range (list $spec.nats.tlsSecret $spec.etcd.tlsSecret $spec.sip.tlsSecret) }}
{{- if . }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- end }}
{{- dict "names" ($names | uniq | sortAlpha) | toJson }}
{{- end }}

{{/* The object name of the Service in front of the operators. */}}
{{- define "calanque.operator.serviceName" -}}
{{- printf "%s-metrics" (include "calanque.operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The failover controller's store, as JSON {"endpoints": [...], "tlsSecret": ""}: etcd.endpoints
and etcd.tlsSecret, else the etcd of the PbxCluster the chart creates, else nothing. The pair
comes from one place: etcd.tlsSecret without etcd.endpoints fails.
*/}}
{{- define "calanque.etcd" -}}
{{- $endpoints := .Values.etcd.endpoints | default list }}
{{- $tlsSecret := .Values.etcd.tlsSecret | default "" }}
{{- if and $tlsSecret (not $endpoints) }}
{{- fail "etcd.tlsSecret is set without etcd.endpoints: give both (or neither, to use pbxCluster.spec.etcd)" }}
{{- end }}
{{- if and (not $endpoints) .Values.pbxCluster.create }}
{{- $endpoints = .Values.pbxCluster.spec.etcd.endpoints | default list }}
{{- $tlsSecret = .Values.pbxCluster.spec.etcd.tlsSecret | default "" }}
{{- end }}
{{- dict "endpoints" $endpoints "tlsSecret" $tlsSecret | toJson }}
{{- end }}

{{/* Where the etcd client TLS Secret is mounted (the path the operator gives the services). */}}
{{- define "calanque.etcd.tlsDir" -}}
/etc/calanque/tls/etcd
{{- end }}

{{/* Where the NATS client TLS Secret is mounted (the path the operator gives the services). */}}
{{- define "calanque.nats.tlsDir" -}}
/etc/calanque/tls/nats
{{- end }}

{{/*
The client TLS variables of the binaries (ADR 0019) for a Secret with ca.crt, tls.crt and
tls.key mounted at a directory: (list "ETCD" <dir>) or (list "NATS" <dir>). Variables rather
than flags: a binary reads them through the same clap arguments as --etcd-ca-file and the rest.
*/}}
{{- define "calanque.clientTlsEnv" -}}
{{- $name := index . 0 }}
{{- $dir := index . 1 }}
- name: CALANQUE_{{ $name }}_CA_FILE
  value: {{ printf "%s/ca.crt" $dir | quote }}
- name: CALANQUE_{{ $name }}_CERT_FILE
  value: {{ printf "%s/tls.crt" $dir | quote }}
- name: CALANQUE_{{ $name }}_KEY_FILE
  value: {{ printf "%s/tls.key" $dir | quote }}
{{- end }}

{{/* The failover controller's objects. */}}
{{- define "calanque.failover.fullname" -}}
{{- printf "%s-failover" (include "calanque.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "calanque.failover.labels" -}}
{{ include "calanque.labels" . }}
app.kubernetes.io/component: failover
{{- end }}

{{- define "calanque.failover.selectorLabels" -}}
{{ include "calanque.selectorLabels" . }}
app.kubernetes.io/component: failover
{{- end }}

{{- define "calanque.failover.serviceAccountName" -}}
{{- if .Values.failover.serviceAccount.create }}
{{- default (include "calanque.failover.fullname" .) .Values.failover.serviceAccount.name }}
{{- else }}
{{- required "failover.serviceAccount.name is required when failover.serviceAccount.create is false" .Values.failover.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The object name of the Service in front of the failover controllers. */}}
{{- define "calanque.failover.serviceName" -}}
{{- printf "%s-metrics" (include "calanque.failover.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"true" when the failover controller is rendered: failover.enabled, and the PbxCluster the
chart creates describes the serving datacenters it watches (pbxCluster.create).
*/}}
{{- define "calanque.failover.enabled" -}}
{{- and .Values.failover.enabled .Values.pbxCluster.create }}
{{- end }}

{{/*
Where failover Deployments run, as JSON {"items": [{"name", "nodeSelector", "role", "natsUrls"}]}: every
serving datacenter, then the witness datacenters when failover.atWitness is set. A controller
at the witness gives the third opinion that breaks a tie between the datacenters (ADR 0018).
*/}}
{{- define "calanque.failover.places" -}}
{{- $items := list }}
{{- range $dc := .Values.pbxCluster.spec.datacenters }}
{{- if or (eq $dc.role "serving") (and (eq $dc.role "witness") $.Values.failover.atWitness) }}
{{- /* NATS servers: the place's own (its natsUrls) first, then the others as listed (ADR 0022). */}}
{{- $own := list }}
{{- $others := list }}
{{- range $url := ($.Values.pbxCluster.spec.nats.urls | default list) }}
{{- if has $url ($dc.natsUrls | default list) }}
{{- $own = append $own $url }}
{{- else }}
{{- $others = append $others $url }}
{{- end }}
{{- end }}
{{- $items = append $items (dict "name" $dc.name "nodeSelector" ($dc.nodeSelector | default dict) "role" $dc.role "natsUrls" (concat $own $others)) }}
{{- end }}
{{- end }}
{{- dict "items" $items | toJson }}
{{- end }}

{{/*
The serving datacenters the failover controller watches, in the PbxCluster's order (the first
is the primary), as JSON {"items": [{"name", "nodeSelector", "targets"}]}. `targets` is the
value of --datacenter: NAME=sip:IP:PORT (the first SIP address, the UDP port; an IPv6 address
in brackets),readyz:URL of the datacenter's edge and call-control metrics Services, which the
operator names <cluster>-<dc>-<component> with the metrics port 9090.
*/}}
{{- define "calanque.failover.datacenters" -}}
{{- $spec := .Values.pbxCluster.spec }}
{{- $cluster := .Values.pbxCluster.name }}
{{- $items := list }}
{{- range $dc := $spec.datacenters }}
{{- if eq $dc.role "serving" }}
{{- if not $dc.sipAddresses }}
{{- fail (printf "pbxCluster.spec.datacenters: serving datacenter %q needs sipAddresses (the failover controller probes the first)" $dc.name) }}
{{- end }}
{{- $address := first $dc.sipAddresses }}
{{- if contains ":" $address }}
{{- $address = printf "[%s]" $address }}
{{- end }}
{{- $targets := list (printf "sip:%s:%d" $address (int $spec.sip.udpPort)) }}
{{- range $component := list "edge" "call-control" }}
{{- $targets = append $targets (printf "readyz:http://%s-%s-%s.%s.svc:9090/readyz" $cluster $dc.name $component $.Release.Namespace) }}
{{- end }}
{{- $items = append $items (dict "name" $dc.name "nodeSelector" ($dc.nodeSelector | default dict) "targets" (printf "%s=%s" $dc.name (join "," $targets))) }}
{{- end }}
{{- end }}
{{- dict "items" $items | toJson }}
{{- end }}
