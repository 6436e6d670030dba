<?php

// Version marker in the shape of OpenEMR's own version.php; this tree is a Shuttle test stand-in.

$v_major = '7';
$v_minor = '0';
$v_patch = '3';
$v_tag = '-shuttle-standin';
$v_realpatch = '0';
$v_database = 0;
$v_acl = 0;
$v_js_includes = 0;
