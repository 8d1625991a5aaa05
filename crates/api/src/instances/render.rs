//! The XML of instance responses, shaped as botocore's model has them: `Instance` with
//! its `InstanceNetworkInterface`, reservations, state changes, attachments, statuses and
//! instance types.

use engine::instances::{
    InstanceDevice, InstanceType, InstanceView, StateChange, VolumeAttachment, reachability,
    state_code,
};
use engine::network::{ElasticAssociation, GroupRef, MetadataOptions};
use engine::query::iso8601;

use crate::xml::Xml;

pub(super) fn instance_type_xml(x: &mut Xml, t: &InstanceType) {
    let threads = t.threads_per_core();
    let cores = t.vcpus.div_ceil(threads);
    x.text("instanceType", t.name)
        .text("currentGeneration", &t.current_generation().to_string())
        .text("freeTierEligible", &t.free_tier().to_string())
        .elem("supportedUsageClasses", |x| {
            x.text("item", "on-demand");
        })
        .elem("supportedRootDeviceTypes", |x| {
            x.text("item", "ebs").text("item", "instance-store");
        })
        .elem("supportedVirtualizationTypes", |x| {
            x.text("item", "hvm");
        })
        .text("bareMetal", "false")
        .text("hypervisor", "nitro")
        .elem("processorInfo", |x| {
            x.elem("supportedArchitectures", |x| {
                x.text("item", t.architecture);
            });
        })
        .elem("vCpuInfo", |x| {
            x.text("defaultVCpus", &t.vcpus.to_string())
                .text("defaultCores", &cores.to_string())
                .text("defaultThreadsPerCore", &threads.to_string());
        })
        .elem("memoryInfo", |x| {
            x.text("sizeInMiB", &t.memory_mib.to_string());
        })
        .text(
            "instanceStorageSupported",
            &t.instance_store.is_some().to_string(),
        );
    if let Some((count, gib)) = t.instance_store {
        x.elem("instanceStorageInfo", |x| {
            x.text("totalSizeInGB", &(u64::from(count) * gib).to_string())
                .elem("disks", |x| {
                    x.elem("item", |x| {
                        x.text("sizeInGB", &gib.to_string())
                            .text("count", &count.to_string())
                            .text("type", "ssd");
                    });
                })
                .text("nvmeSupport", "unsupported");
        });
    }
    x.elem("ebsInfo", |x| {
        x.text("ebsOptimizedSupport", "default")
            .text("encryptionSupport", "supported")
            .text("nvmeSupport", "unsupported");
    })
    .text("hibernationSupported", "false")
    .text("burstablePerformanceSupported", &t.burstable().to_string())
    .text("dedicatedHostsSupported", "false")
    .text("autoRecoverySupported", "false")
    .elem("supportedBootModes", |x| {
        x.text("item", "legacy-bios").text("item", "uefi");
    });
}

pub(super) fn state_xml(x: &mut Xml, name: &str, state: &str) {
    x.elem(name, |x| {
        x.text("code", &state_code(state).to_string())
            .text("name", state);
    });
}

pub(super) fn device_xml(x: &mut Xml, d: &InstanceDevice) {
    x.text("deviceName", &d.device_name).elem("ebs", |x| {
        x.text("volumeId", &d.volume_id)
            .text("status", &d.status)
            .text("attachTime", &iso8601(d.attach_time_ms))
            .text("deleteOnTermination", &d.delete_on_termination.to_string());
    });
}

/// One `Instance` (an `instancesSet` item).
pub(super) fn instance_xml(x: &mut Xml, v: &InstanceView, region: &str) {
    let d = &v.doc;
    let running = v.state == "running";
    x.text("instanceId", &v.id).text("imageId", &d.image_id);
    state_xml(x, "instanceState", &v.state);
    let live = v.state != "terminated";
    x.text(
        "privateDnsName",
        &if live {
            v.private_dns_name(region)
        } else {
            String::new()
        },
    )
    .text("dnsName", &v.public_dns_name(region).unwrap_or_default())
    .text("reason", &d.state_transition_reason)
    .opt("keyName", d.key_name.as_ref())
    .text("amiLaunchIndex", &d.ami_launch_index.to_string());
    x.list("productCodes", &d.product_codes, |x, c| {
        x.text("productCode", &c.id).text("type", &c.kind);
    });
    x.text("instanceType", &d.instance_type)
        .text("launchTime", &iso8601(d.launch_time_ms))
        .elem("placement", |x| {
            x.text("availabilityZone", &d.availability_zone)
                .text("groupName", "")
                .text("tenancy", "default");
        })
        .opt("kernelId", d.kernel_id.as_ref())
        .opt("ramdiskId", d.ramdisk_id.as_ref())
        .opt("platform", d.platform.as_ref().map(|p| p.to_lowercase()))
        .elem("monitoring", |x| {
            x.text("state", "disabled");
        });
    if live {
        x.text("privateIpAddress", &d.private_ip)
            .opt("ipAddress", v.public_ip());
    }
    if let Some(n) = d.network.as_ref().filter(|_| live) {
        x.text("subnetId", &n.subnet_id).text("vpcId", &n.vpc_id);
    }
    groups_xml(
        x,
        "groupSet",
        d.network.as_ref().map(|n| n.groups.as_slice()),
    );
    if let Some(r) = &d.state_reason {
        x.elem("stateReason", |x| {
            x.text("code", &r.code).text("message", &r.message);
        });
    }
    x.text("architecture", &d.architecture)
        .text("rootDeviceType", &d.root_device_type)
        .text("rootDeviceName", &d.root_device_name)
        .list("blockDeviceMapping", &d.block_devices, device_xml)
        .text("virtualizationType", &d.virtualization_type)
        .opt("clientToken", d.client_token.as_ref());
    if !v.tags.is_empty() {
        x.tags(&v.tags);
    }
    x.text("hypervisor", "xen");
    x.elem("networkInterfaceSet", |x| {
        if let Some(n) = d.network.as_ref().filter(|_| live) {
            x.elem("item", |x| interface_xml(x, v, n, region));
        }
    });
    if let Some(n) = &d.network {
        x.text("sourceDestCheck", &n.source_dest_check.to_string());
        // VPC instances: IP-based hostnames (ip-172-31-0-4.ec2.internal), no DNS records
        // by resource name (RunInstances refuses other PrivateDnsNameOptions: run_options).
        x.elem("privateDnsNameOptions", |x| {
            x.text("hostnameType", "ip-name")
                .text("enableResourceNameDnsARecord", "false")
                .text("enableResourceNameDnsAAAARecord", "false");
        });
    }
    x.text("ebsOptimized", &d.ebs_optimized.to_string())
        .text("enaSupport", &d.ena_support.to_string())
        .elem("cpuOptions", |x| {
            x.text("coreCount", &d.vcpus.div_ceil(2).max(1).to_string())
                .text("threadsPerCore", if d.vcpus > 1 { "2" } else { "1" });
        })
        .elem("capacityReservationSpecification", |x| {
            x.text("capacityReservationPreference", "open");
        })
        .elem("hibernationOptions", |x| {
            x.text("configured", "false");
        })
        .elem("metadataOptions", |x| {
            metadata_options_xml(x, &d.metadata_options, running);
        })
        .elem("enclaveOptions", |x| {
            x.text("enabled", "false");
        })
        .opt("bootMode", d.boot_mode.as_ref())
        .text("platformDetails", &d.platform_details)
        .text("usageOperation", &d.usage_operation)
        .text("usageOperationUpdateTime", &iso8601(d.launch_time_ms))
        .elem("maintenanceOptions", |x| {
            x.text("autoRecovery", "default");
        })
        .text(
            "currentInstanceBootMode",
            if d.boot_mode.as_deref() == Some("uefi") {
                "uefi"
            } else {
                "legacy-bios"
            },
        );
}

pub(super) fn metadata_options_xml(x: &mut Xml, o: &MetadataOptions, applied: bool) {
    x.text("state", if applied { "applied" } else { "pending" })
        .text("httpTokens", &o.http_tokens)
        .text(
            "httpPutResponseHopLimit",
            &o.http_put_response_hop_limit.to_string(),
        )
        .text("httpEndpoint", &o.http_endpoint)
        .text("httpProtocolIpv6", &o.http_protocol_ipv6)
        .text("instanceMetadataTags", &o.instance_metadata_tags);
}

pub(super) fn groups_xml(x: &mut Xml, name: &str, groups: Option<&[GroupRef]>) {
    x.list(name, groups.unwrap_or_default(), |x, g| {
        x.text("groupName", &g.name).text("groupId", &g.id);
    });
}

/// The primary interface of an instance (an `InstanceNetworkInterface`).
pub(super) fn interface_xml(
    x: &mut Xml,
    v: &InstanceView,
    n: &engine::network::InstanceNetwork,
    region: &str,
) {
    let association = |x: &mut Xml| {
        if let Some(ip) = v.public_ip() {
            x.elem("association", |x| {
                x.text("publicIp", ip)
                    .text(
                        "publicDnsName",
                        &v.public_dns_name(region).unwrap_or_default(),
                    )
                    .text(
                        "ipOwnerId",
                        &ElasticAssociation::ip_owner(n.elastic.as_ref(), &v.owner_id),
                    );
            });
        }
    };
    x.text("networkInterfaceId", &n.interface_id)
        .text("subnetId", &n.subnet_id)
        .text("vpcId", &n.vpc_id)
        .text("description", "")
        .text("ownerId", &v.owner_id)
        .text("status", "in-use")
        .text("macAddress", &n.mac)
        .text("privateIpAddress", &v.doc.private_ip)
        .text("privateDnsName", &v.private_dns_name(region))
        .text("sourceDestCheck", &n.source_dest_check.to_string());
    groups_xml(x, "groupSet", Some(&n.groups));
    x.elem("attachment", |x| {
        x.text("attachmentId", &n.attachment_id)
            .text("deviceIndex", "0")
            .text("status", "attached")
            .text("attachTime", &iso8601(v.doc.launch_time_ms))
            .text("deleteOnTermination", "true")
            .text("networkCardIndex", "0");
    });
    association(x);
    x.elem("privateIpAddressesSet", |x| {
        x.elem("item", |x| {
            x.text("privateIpAddress", &v.doc.private_ip)
                .text("privateDnsName", &v.private_dns_name(region))
                .text("primary", "true");
            association(x);
        });
    })
    .text("interfaceType", "interface");
}

pub(super) fn reservation_xml(
    x: &mut Xml,
    reservation: &str,
    owner: &str,
    items: &[&InstanceView],
    region: &str,
) {
    x.text("reservationId", reservation)
        .text("ownerId", owner)
        .elem("groupSet", |_| {})
        .elem("instancesSet", |x| {
            for v in items {
                x.elem("item", |x| instance_xml(x, v, region));
            }
        });
}

pub(super) fn changes_xml(x: &mut Xml, changes: &[StateChange]) {
    x.list("instancesSet", changes, |x, c| {
        x.text("instanceId", &c.instance_id);
        state_xml(x, "currentState", &c.current);
        state_xml(x, "previousState", &c.previous);
    });
}

pub(super) fn attachment_xml(x: &mut Xml, a: &VolumeAttachment) {
    x.text("volumeId", &a.volume_id)
        .text("instanceId", &a.instance_id)
        .text("device", &a.device)
        .text("status", &a.state)
        .text("attachTime", &iso8601(a.attach_time_ms))
        .text("deleteOnTermination", &a.delete_on_termination.to_string());
}

pub(super) fn status_summary(x: &mut Xml, name: &str, status: &str) {
    x.elem(name, |x| {
        x.text("status", status);
        // EC2 has no checks to detail for instances that do not run.
        if status != "not-applicable" {
            x.elem("details", |x| {
                x.elem("item", |x| {
                    x.text("name", "reachability")
                        .text("status", reachability(status));
                });
            });
        }
    });
}
